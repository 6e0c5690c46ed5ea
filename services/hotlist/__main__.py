"""python -m services.hotlist — the hot-list API and the read-stream matcher in one process."""

from services.common.grpc_server import run
from services.hotlist.server import make_spec
from services.hotlist.settings import HotlistSettings


def main() -> None:
    settings = HotlistSettings()
    run(settings, lambda: make_spec(settings))


if __name__ == "__main__":
    main()
