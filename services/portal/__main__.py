"""python -m services.portal"""

from services.common.web import serve_http
from services.portal.app import create_app
from services.portal.settings import PortalSettings


def main() -> None:
    settings = PortalSettings()
    serve_http(lambda: create_app(settings), settings, settings)


if __name__ == "__main__":
    main()
