import sys

from nlakit.cli import main

sys.exit(main())
