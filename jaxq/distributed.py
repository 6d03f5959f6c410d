"""Several processes, one sweep: JAX's own distributed runtime.

Start the same program on every host (or several processes on one host), each calling
:func:`initialize` before anything else touches JAX. Afterwards ``jax.devices()`` lists every device
of every process, and :func:`jaxq.sweep.sweep` spreads its lanes over all of them in one global mesh:
each process feeds and runs the lanes of its own devices, the logs are gathered so that every
process returns the whole result, and checkpoints are written by orbax from every process into one
shared folder (each process its own shards; the run's small files from process 0). Only process 0
should write the outputs (``jaxq sweep`` does so).

On CPUs the processes talk through gloo (JAX's CPU collectives), so a sweep can be spread over the
cores of several machines, or tried out with two processes on one.
"""

from __future__ import annotations

from jaxq.validation import check_count


def parse_address(address: str) -> str:
    """``HOST:PORT`` checked (a port in 1 .. 65535).

    Raises:
        ValueError: for anything else.
    """
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"coordinator={address!r} is not allowed; give HOST:PORT, e.g. 10.0.0.1:1234")
    return address


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """Join JAX's distributed runtime (call before any other use of JAX).

    With no arguments, JAX detects the cluster itself (Cloud TPU pod slices, Slurm, Open MPI).
    Otherwise give all three: the coordinator's ``HOST:PORT`` (process 0 listens there), the number
    of processes and this process's index.

    Raises:
        ValueError: for some but not all of the three, a bad address, or an index outside
            ``0 .. num_processes - 1``.
    """
    import jax

    given = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
    if any(v is not None for v in given.values()):
        missing = [k for k, v in given.items() if v is None]
        if missing:
            raise ValueError(f"{', '.join(missing)} missing: give coordinator, num_processes and process_id "
                             "together (or none of them on a TPU pod slice or under Slurm/Open MPI)")
        parse_address(coordinator)
        count = check_count(num_processes, "num_processes")
        if not 0 <= process_id < count:
            raise ValueError(f"process_id={process_id} is not allowed; it must be in [0, {count - 1}] "
                             f"for num_processes={count}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # only the CPU client uses it
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
