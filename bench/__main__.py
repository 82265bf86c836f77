from .engine import main

raise SystemExit(main())
