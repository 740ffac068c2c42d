from g5kdeploy.cli import main

main()
