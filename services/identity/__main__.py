"""python -m services.identity"""

from services.common.grpc_server import run
from services.identity.server import make_spec
from services.identity.settings import IdentitySettings


def main() -> None:
    settings = IdentitySettings()
    run(settings, lambda: make_spec(settings))


if __name__ == "__main__":
    main()
