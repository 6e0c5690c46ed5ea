"""python -m services.retention"""

from services.common.grpc_server import run
from services.retention.server import make_spec
from services.retention.settings import RetentionSettings


def main() -> None:
    settings = RetentionSettings()
    run(settings, lambda: make_spec(settings))


if __name__ == "__main__":
    main()
