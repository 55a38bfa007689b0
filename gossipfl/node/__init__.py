"""The node: its engine and seams, config, checkpoints, the daemon, demo and CLI."""
