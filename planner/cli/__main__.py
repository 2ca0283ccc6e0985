from vplan.planner.cli.main import main

main()
