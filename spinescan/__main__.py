from spinescan.cli import main

main()
