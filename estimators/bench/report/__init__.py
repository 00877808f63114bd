r"""Reports from the benchmark CSVs of a folder: plots, a Markdown summary and a terminal table.

* :mod:`.select` -- which rows: benchmark CSVs, the latest run of each cell, the lowest RMSE;
* :mod:`.cost` -- encoder evaluations per estimate, by estimator family;
* :mod:`.budget` -- the lowest RMSE at equal cost (encoder evaluations, time);
* :mod:`.largest` -- every estimator at the largest batch size, and the published variants against
  their correct counterparts;
* :mod:`.plots` -- ``<name>-bias.png``, ``<name>-cost.png``, ``<name>-pareto.png``, ``<name>-log_px.png``, ...;
* :mod:`.summary` -- ``README.md`` and :func:`write_report` (plots and summary together);
* :mod:`.terminal` -- a compact plain-text table;
* :mod:`.columns` -- the CSV schema as Markdown (the README's column table, ``docs/csv.md``);
* :mod:`.format` -- number and table formatting.
"""
from .budget import equal_cost
from .columns import columns_table, csv_doc
from .cost import encoder_evaluations
from .largest import COUNTERPARTS, largest_tables, variant_sentences
from .plots import PLOTS, pareto_front, plot_bias, plot_cost, plot_log_px, plot_pareto
from .select import best_by_rmse, latest_cells, load_results
from .summary import summary_markdown, write_report
from .terminal import terminal_table

__all__ = ["columns_table", "csv_doc", "encoder_evaluations", "equal_cost", "COUNTERPARTS", "largest_tables",
           "variant_sentences", "PLOTS", "pareto_front", "plot_bias", "plot_cost", "plot_log_px", "plot_pareto",
           "best_by_rmse", "latest_cells", "load_results", "summary_markdown", "write_report", "terminal_table"]
