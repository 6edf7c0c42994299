from hsicli.cli import main

main()
