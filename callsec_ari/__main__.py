from callsec_ari.cli import main

raise SystemExit(main())
