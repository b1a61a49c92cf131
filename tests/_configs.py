"""JTFS configurations shared by the tests (importable as ``_configs``: pyproject puts tests/ on the path).

Each is the smallest setting that still exercises what the tests check;
give a test its own configuration only where it needs particular values.
"""

TINY_N = 512
# 5 second-order paths at TINY_N samples: sampling, P-Adam / P-SAGA state and caching at negligible cost.
TINY = dict(J=3, Q1=2, Q2=1, J_fr=1, Q_fr=1)

# 35 paths over several n2 and both spins: chunked full-tree evaluation, single paths vs. the full tree.
JTFS_1024 = dict(shape=1024, J=4, Q1=3, Q2=2, J_fr=2, Q_fr=1)

# 63 paths at 2048 samples: losses built from registry or run configs and trained on short signals.
JTFS_2048 = dict(shape=2048, J=6, Q1=4, Q2=2, J_fr=2, Q_fr=1)

# The paper's filterbank (Q1=8, Q2=2, J_fr=3, Q_fr=2): combine with a shape and J.
PAPER_Q = dict(Q1=8, Q2=2, J_fr=3, Q_fr=2)
