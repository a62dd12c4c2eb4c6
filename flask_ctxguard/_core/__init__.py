"""
The bottom layer, which every other stands on and which imports none of
them: the violation model (the rule table, `Violation` and the one place
violations are constructed), the request tag, the configuration (settings,
codes, ignore lists, a test run's override), Flask's private details, the
generated-class registry, the one escaper, the docs site's addresses and
the logger.
"""

from __future__ import annotations
