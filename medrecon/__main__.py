"""``python -m medrecon`` (and ``torchrun -m medrecon``) runs the ``medrecon`` command."""
import sys

from medrecon.cli import main

sys.exit(main())
