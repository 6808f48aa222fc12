"""`python -m unrolled` is the same as the `unrolled` command."""
from unrolled.cli import main

raise SystemExit(main())
