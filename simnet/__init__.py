"""Simulation.

* :mod:`simnet.simulate`: ``gossipfl simulate``: a scenario's swarm of
  production nodes over emulated links (:mod:`simnet.links`), with its
  events (:mod:`simnet.scenario`), measured as it runs
  (:mod:`simnet.report` writes the outputs); :mod:`simnet.oracle` is
  GossipFL's centralized matching as a selector the nodes obey.
* :mod:`simnet.swarm`: many production nodes
  (:class:`~gossipfl.node.engine.GossipNode`) in one trio run, in virtual
  time, over memory streams with real TLS and ideal links; reproducible
  from one seed.
* :mod:`simnet.rounds`: the learning algorithm alone, round by round, as a
  reference (see what it leaves out there).
* :mod:`simnet.hosts`: the opposite end: real ``gossipfl run`` daemons as
  separate hosts in network namespaces, on a bridge, with links shaped by
  ``tc tbf`` (needs root).
"""
