"""The daemon: config, trainer host, gossip loop, checkpoints, control, CLI."""
