"""An in-memory capacity index per placement replica, for allocation candidates.

Why: answering candidates from SQL cost about 50 ms at 10,000 providers
(limit 1,000), most of it building SQL and moving rows through the driver,
whatever the database. The whole placement state of a provider fits in
under a kilobyte, so each replica holds all of it (providers, trees,
inventories with their usage, traits, aggregates) and answers candidates
without a query.

The database stays the single source of truth for claims: a claim is a
conditional UPDATE there (allocations.py), whatever the index said. A stale
index can therefore only offer a candidate that the claim then refuses
(insufficient capacity, which the scheduler retries on its next host) or
miss a host for a moment; it can never over-commit.

Coherence, by provider generations (every provider write bumps one):
  * this replica's own writes change the index as soon as they commit, with
    the values and generations the database returned (state.py explains
    when such a change is exact);
  * other replicas' writes are picked up by a refresh every REFRESH_INTERVAL_S:
    it compares a digest per bucket of 256 provider ids (count and sums of
    id, generation, root and parent: one GROUP BY in the database), then
    (id, generation, root, parent) of the providers in buckets that differ,
    and reads again only the providers that differ. So another replica's
    write is seen here within about a second, and an idle refresh moves a
    row per 256 providers, not one per provider.
  * `in_tree` naming a provider this replica has not seen yet reads that
    tree at once rather than answering "not found".

Memory: about 1 KB per provider (measured 9.3 MB for 10,000 flat providers
with three inventories and a trait; trait and aggregate sets are shared).
The candidates servicer keeps up to as much again in encoded answer pieces
(servicers/candidate_replies.py): about 18 MB in all at 10,000 providers.
"""
