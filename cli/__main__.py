import sys

from aro.cli import main

sys.exit(main())
