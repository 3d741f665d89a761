import sys

from crossent.cli import main

sys.exit(main())
