"""``python -m walign.report RESULTS_DIR --out DIR``: the same command as ``walign-report``."""
from .cli import main

raise SystemExit(main())
