"""`python -m services.gateway --config SITE.yaml`: the camera gateway."""

from .command import main

raise SystemExit(main())
