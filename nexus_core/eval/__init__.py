"""Evaluating persona changes on real traffic: conversations frozen into test sets (``freeze``),
replayed against a new version and judged pairwise against the original replies (``judge``,
``runs``), the judge calibrated against people's blind votes (``calibration``), and the verdict as
JUnit XML for CI (``junit``)."""
