from codex_cli.app import main

main()
