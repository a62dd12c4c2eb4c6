"""
Leaf modules every layer stands on: Flask's private details, the
request record and tag, the configuration, the generated-class registry
and the logger. Nothing here imports the layers above.
"""

from __future__ import annotations
