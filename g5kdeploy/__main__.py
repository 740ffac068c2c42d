from g5kdeploy.entry import main

main()
