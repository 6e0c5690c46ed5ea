"""python -m services.tracker — groups the read stream into vehicle passes."""

from services.common.grpc_server import run
from services.tracker.server import make_spec
from services.tracker.settings import TrackerSettings


def main() -> None:
    settings = TrackerSettings()
    run(settings, lambda: make_spec(settings))


if __name__ == "__main__":
    main()
