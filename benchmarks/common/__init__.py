"""The benchmarks' harness. A benchmark file holds its problems and its studies; how they
are timed, isolated and reported is here, so that every benchmark keeps the same rules:

- Compare ratios measured in turns in one process: the steps compared take turns within
  each repetition (`time_interleaved`), so that a load drifting over the run weighs on all
  of them alike; one untimed warm-up call (compilation), several repetitions, medians.
- Print the load average with every table (`Report`, `environment`).
- Native references compared with ours run on one BLAS thread, as ours does:
  `pin_blas_threads()` before numpy loads OpenBLAS, or `one_blas_thread()` around a call.
- Import cvxopt before sparsax and PETSc: they load one CHOLMOD shared object, and the
  first import decides its BLAS (`import_sparsax` refuses otherwise; `environment` says
  which came first).
- Run a call that may hang, crash or exhaust memory in a child process (`time_isolated`,
  `run_child`); read its memory with `PeakMemory`.

Importing the harness loads neither numpy nor jax, so that `pin_blas_threads` can run
after it and before them.
"""

from .cli import choose as choose, command_line as command_line
from .isolation import (
    error_text as error_text,
    isolated_result as isolated_result,
    run_child as run_child,
    send_result as send_result,
    time_isolated as time_isolated,
)
from .memory import (
    format_bytes as format_bytes,
    PeakMemory as PeakMemory,
    physical_memory as physical_memory,
    process_memory as process_memory,
)
from .probes import record_amg_solves as record_amg_solves
from .report import (
    environment as environment,
    format_ratio as format_ratio,
    format_result as format_result,
    format_seconds as format_seconds,
    format_target as format_target,
    load_text as load_text,
    markdown_table as markdown_table,
    Report as Report,
    results_table as results_table,
    source_version as source_version,
    write_result as write_result,
)
from .startup import (
    examples_on_path as examples_on_path,
    import_sparsax as import_sparsax,
    one_blas_thread as one_blas_thread,
    pin_blas_threads as pin_blas_threads,
    ROOT as ROOT,
)
from .timing import (
    block as block,
    Failure as Failure,
    Phases as Phases,
    Result as Result,
    Step as Step,
    time_call as time_call,
    time_interleaved as time_interleaved,
    Timing as Timing,
    turn_order as turn_order,
)
