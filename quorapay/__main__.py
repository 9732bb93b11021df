from quorapay.cli.main import main

main()
