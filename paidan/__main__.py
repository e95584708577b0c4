from paidan import main

main()
