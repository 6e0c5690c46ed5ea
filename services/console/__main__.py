"""python -m services.console"""

from services.common.web import serve_http
from services.console.app import create_app
from services.console.settings import ConsoleSettings


def main() -> None:
    settings = ConsoleSettings()
    serve_http(lambda: create_app(settings), settings, settings)


if __name__ == "__main__":
    main()
