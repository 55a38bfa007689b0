"""Sans-IO wire protocol: message types, msgpack codec, framing and the
exchange state machine.  Imports no trio, socket, ssl or zeroconf."""
