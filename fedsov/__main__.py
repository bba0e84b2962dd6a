from fedsov.cli import main

main()
