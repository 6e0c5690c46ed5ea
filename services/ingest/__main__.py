"""python -m services.ingest"""

from services.common.grpc_server import run
from services.ingest.server import make_spec
from services.ingest.settings import IngestSettings


def main() -> None:
    settings = IngestSettings()
    run(settings, lambda: make_spec(settings))


if __name__ == "__main__":
    main()
