"""Allocation candidates: which providers can hold a request, ready to claim.

Answered from the replica's capacity index (capacity_index/), never from
SQL per query. Two steps per tree, cheap first:
  1. trees.may_serve: can the tree plausibly serve the request? For every
     requested class some provider of the tree has room; granular groups
     need one provider with all of their classes and traits. Trees are
     walked in root id order from a random start when asked, so concurrent
     schedulers see different hosts, and the walk stops at the limit.
  2. combinations.tree_requests: the exact allocation requests per tree. A
     tree of one provider needs no search (step 1 was exact for it); a
     nested tree is searched combination by combination, bounded by
     MAX_PER_TREE results and MAX_EXAMINED combinations, so deep trees
     cannot explode.

Semantics (OpenStack Placement's, for the common cases):
  * unnamed group: each class may come from any provider of one tree; the
    providers used must together have the required traits, and none of them
    a forbidden one; member_of applies to the tree's root. With no resources
    of its own, its traits apply to the root.
  * granular group: all of its resources from one provider, which has its
    required traits, none of its forbidden ones, and is in one of its
    member_of aggregates. GROUP_POLICY_ISOLATE puts groups on different providers.
  * amounts that land on one provider add up and must fit together.
"""

from services.placement.candidates.request import CandidateQuery, Candidates, Group
from services.placement.candidates.search import AllocationCandidates

__all__ = ["AllocationCandidates", "CandidateQuery", "Candidates", "Group"]
