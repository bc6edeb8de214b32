from dicomflow.cli import main

main()
