"""
Tests of ``python -m flask_ctxguard lint``: each static rule on the shapes
it must report and the sanctioned patterns it must not, and the command.
"""
