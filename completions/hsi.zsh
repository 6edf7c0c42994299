#compdef hsi

_hsi_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _HSI_COMPLETE=complete_zsh hsi)
}

compdef _hsi_completion hsi