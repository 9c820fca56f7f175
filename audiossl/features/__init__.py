"""Features a downstream task reads: upstreams (checkpoints, peers, baselines), frozen extraction, k-means targets."""
