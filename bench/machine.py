"""What a benchmark's results record of the machine they were measured on."""

import os
import platform

SHARED = "shared machine: other processes may run; figures are indicative"


def machine(load_before: tuple[float, float, float], note: str = SHARED) -> dict:
    """CPUs, Python, and the load average (1, 5, 15 min) before and after the run: the CPUs may be shared."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "note": note,
        "load_average_before": [round(x, 1) for x in load_before],
        "load_average_after": [round(x, 1) for x in os.getloadavg()],
    }
