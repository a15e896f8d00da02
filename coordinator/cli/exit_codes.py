"""Exit codes of the ``workhive`` command (sysexits-style where one fits)."""

OK = 0
FAILED = 1  # the work failed (a task failed, invariants broken, bad input file)
USAGE = 2  # bad flags or settings
UNAVAILABLE = 69  # EX_UNAVAILABLE: no leader / etcd or coordinator unreachable
TEMPFAIL = 75  # EX_TEMPFAIL: retry later
NOPERM = 77  # EX_NOPERM: credentials refused (wrong token, not allowed)
INTERRUPTED = 130  # SIGINT
