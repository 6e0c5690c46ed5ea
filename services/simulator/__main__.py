"""`python -m services.simulator`: the camera-gateway simulator."""

from .command import main

raise SystemExit(main())
