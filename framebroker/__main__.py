from framebroker.cli import main

raise SystemExit(main())
