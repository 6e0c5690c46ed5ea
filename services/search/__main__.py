"""python -m services.search"""

from services.common.grpc_server import run
from services.search.server import make_spec
from services.search.settings import SearchSettings


def main() -> None:
    settings = SearchSettings()
    run(settings, lambda: make_spec(settings))


if __name__ == "__main__":
    main()
