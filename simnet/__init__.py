"""Virtual-time swarm simulator running the production node over emulated links."""
