import sys

from gossipfl.node.cli import main

sys.exit(main())
