"""Simulation.

* :mod:`simnet.swarm`: many production nodes (:class:`~gossipfl.node.engine.GossipNode`)
  in one trio run, in virtual time, over memory streams with real TLS;
  reproducible from one seed.  Links are ideal so far: no latency, no
  bandwidth limit.
* :mod:`simnet.rounds`: the learning algorithm alone, round by round, as a
  reference (see what it leaves out there).
"""
