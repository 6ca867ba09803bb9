from vcam_me.app import main

raise SystemExit(main())
