from distillbench.cli import main

raise SystemExit(main())
