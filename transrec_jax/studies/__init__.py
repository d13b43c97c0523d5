"""Studies: named lists of runs (ablation grids, reproduction tables, benchmark races), one
runner that launches and records them, one report that tables them.

  study.py   the Run model and the checks every study file shares
  grid.py    ablation sweep files (experiments/ablations/*.py) → runs
  table.py   reproduction table files (experiments/reproduce/ml1m.py) → runs
  runner.py  launching, resume/skip, the results records
  report.py  Markdown tables, CSVs and plots
"""
