"""The workloads of both papers, one module per task, behind one registry."""
