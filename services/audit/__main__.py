"""python -m services.audit"""

from services.audit.server import make_spec
from services.audit.settings import AuditSettings
from services.common.grpc_server import run


def main() -> None:
    settings = AuditSettings()
    run(settings, lambda: make_spec(settings))


if __name__ == "__main__":
    main()
