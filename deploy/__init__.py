"""Ways to run Stratus: local/ runs the whole mesh on one machine."""
