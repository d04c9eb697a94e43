"""The exception a peer's setup raises when it cannot run a workload on this machine."""


class Unavailable(Exception):
    pass
