; Inno Setup 6 script (6.3 or newer: x64compatible): one installer for vcam-me on Windows 10/11 (x64).
;
;   iscc /DAppVersion=0.1.0 installers\windows\vcam-me.iss
;
; Expects (installers\windows\build.ps1 prepares both):
;   dist\vcam-me\                      the PyInstaller one-folder build (installers\vcam_me.spec)
;   build\unitycapture\Install\        UnityCapture's filter DLLs and its licence
;                                      (https://github.com/schellingb/UnityCapture, MIT for the filter)
; Writes dist\vcam-me-<version>-windows-x64-setup.exe.
;
; The virtual camera: vcam-me writes to the OBS Virtual Camera or to UnityCapture (pyvirtualcam's
; two Windows backends). If OBS's DirectShow filter is registered (its CLSID below), nothing more
; is needed. Otherwise a wizard page explains the two choices and offers to register UnityCapture
; (a 64-bit and a 32-bit DirectShow filter, about 1 MB, registered with regsvr32, removed on
; uninstall), or to install OBS Studio later from its download page.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "vcam-me"
#define AppExe "vcam-me.exe"
; The windowed twin of vcam-me.exe (installers/vcam_me.spec): the tray without a console window.
#define TrayExe "vcam-me-tray.exe"
#define Root "..\.."
; DirectShow filters as registered under HKEY_CLASSES_ROOT\CLSID (same values as vcam_me/output/virtualcam.py).
#define ObsVirtualCamClsid "{A3FCE0F5-3493-419F-958A-ABA1250EC20B}"
#define UnityCaptureClsid "{5C2CD55C-92AD-4999-8666-912BD3E70010}"

[Setup]
AppId={{6E0B3C52-4D1F-4F5A-9B7E-0C6A7D1E2F31}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=vcam-me contributors
AppSupportURL=https://github.com/schellingb/UnityCapture
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
; Registering a DirectShow filter writes HKEY_CLASSES_ROOT for all users: administrator rights.
PrivilegesRequired=admin
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
LicenseFile={#Root}\LICENSE
OutputDir={#Root}\dist
OutputBaseFilename=vcam-me-{#AppVersion}-windows-x64-setup
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
UninstallDisplayIcon={app}\{#AppExe}
; drawn by installers\make_icon.py (build.ps1 runs it first)
SetupIconFile={#Root}\build\icon\vcam-me.ico
CloseApplications=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "autostart"; Description: "Start vcam-me in the tray when I sign in"; GroupDescription: "Start-up:"; Flags: unchecked

[Files]
Source: "{#Root}\dist\vcam-me\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs
Source: "{#Root}\build\unitycapture\Install\UnityCaptureFilter64.dll"; DestDir: "{app}\unitycapture"; Flags: ignoreversion; Check: WantUnityCapture
Source: "{#Root}\build\unitycapture\Install\UnityCaptureFilter32.dll"; DestDir: "{app}\unitycapture"; Flags: ignoreversion; Check: WantUnityCapture
Source: "{#Root}\build\unitycapture\LICENSE"; DestDir: "{app}\unitycapture"; DestName: "LICENSE.txt"; Flags: ignoreversion skipifsourcedoesntexist; Check: WantUnityCapture

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#TrayExe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#TrayExe}"; Tasks: desktopicon

[Registry]
; Autostart for the user who installs: the tray app, no console.
Root: HKCU; Subkey: "Software\Microsoft\Windows\CurrentVersion\Run"; ValueType: string; ValueName: "vcam-me"; ValueData: """{app}\{#TrayExe}"""; Flags: uninsdeletevalue; Tasks: autostart

[Run]
; regsvr32 of the matching bitness for each filter; /s: no message box. 32-bit apps (some call
; clients) see only the 32-bit filter, 64-bit apps only the 64-bit one.
Filename: "{sys}\regsvr32.exe"; Parameters: "/s ""{app}\unitycapture\UnityCaptureFilter64.dll"""; StatusMsg: "Registering the UnityCapture virtual camera (64-bit)…"; Flags: runhidden waituntilterminated; Check: WantUnityCapture
Filename: "{syswow64}\regsvr32.exe"; Parameters: "/s ""{app}\unitycapture\UnityCaptureFilter32.dll"""; StatusMsg: "Registering the UnityCapture virtual camera (32-bit)…"; Flags: runhidden waituntilterminated; Check: WantUnityCapture
Filename: "{app}\{#TrayExe}"; Description: "Start vcam-me now"; Flags: nowait postinstall skipifsilent
Filename: "https://obsproject.com/download"; Description: "Open the OBS Studio download page"; Flags: shellexec postinstall skipifsilent; Check: WantObsLater

[UninstallRun]
; The Check runs at install time: the entries are kept for the uninstaller only when this
; installer registered UnityCapture (a driver the user had before is left alone).
Filename: "{sys}\regsvr32.exe"; Parameters: "/u /s ""{app}\unitycapture\UnityCaptureFilter64.dll"""; Flags: runhidden waituntilterminated; RunOnceId: "UnregUnityCapture64"; Check: WantUnityCapture
Filename: "{syswow64}\regsvr32.exe"; Parameters: "/u /s ""{app}\unitycapture\UnityCaptureFilter32.dll"""; Flags: runhidden waituntilterminated; RunOnceId: "UnregUnityCapture32"; Check: WantUnityCapture

[Code]
var
  DriverPage: TInputOptionWizardPage;
  ObsFound, UnityFound: Boolean;

function FilterRegistered(const Clsid: String): Boolean;
begin
  { In 64-bit install mode HKEY_CLASSES_ROOT is the 64-bit view, where both drivers register. }
  Result := RegKeyExists(HKEY_CLASSES_ROOT, 'CLSID\' + Clsid);
end;

procedure InitializeWizard;
begin
  ObsFound := FilterRegistered('{#ObsVirtualCamClsid}');
  UnityFound := FilterRegistered('{#UnityCaptureClsid}');
  if ObsFound or UnityFound then
    Exit;
  DriverPage := CreateInputOptionPage(wpSelectTasks,
    'Virtual camera driver',
    'vcam-me needs a virtual camera to appear in Zoom, Teams or Meet.',
    'No virtual camera driver was found on this PC. vcam-me can write to either of these:' + #13#10 + #13#10 +
    '- UnityCapture: a small DirectShow driver (about 1 MB), installed now with vcam-me and removed with it. ' +
    'It appears as "Unity Video Capture" in your call app.' + #13#10 +
    '- OBS Virtual Camera: comes with OBS Studio (a large streaming app, about 150 MB). Choose this if you ' +
    'use OBS anyway; the download page opens at the end.' + #13#10 + #13#10 +
    'Without either, vcam-me still records and previews, but no call app can see it.',
    True, False);
  DriverPage.Add('Install the UnityCapture driver now (recommended)');
  DriverPage.Add('I will install OBS Studio myself');
  DriverPage.Add('No driver for now');
  DriverPage.SelectedValueIndex := 0;
end;

function WantUnityCapture: Boolean;
begin
  Result := (not ObsFound) and (not UnityFound) and (DriverPage <> nil) and (DriverPage.SelectedValueIndex = 0);
end;

function WantObsLater: Boolean;
begin
  Result := (not ObsFound) and (not UnityFound) and (DriverPage <> nil) and (DriverPage.SelectedValueIndex = 1);
end;

function UpdateReadyMemo(Space, NewLine, MemoUserInfoInfo, MemoDirInfo, MemoTypeInfo, MemoComponentsInfo,
  MemoGroupInfo, MemoTasksInfo: String): String;
var
  Driver: String;
begin
  if ObsFound then
    Driver := 'OBS Virtual Camera (already installed)'
  else if UnityFound then
    Driver := 'UnityCapture (already installed)'
  else if WantUnityCapture then
    Driver := 'UnityCapture (installed now)'
  else if WantObsLater then
    Driver := 'OBS Studio (you install it; its download page opens at the end)'
  else
    Driver := 'none';
  Result := MemoDirInfo + NewLine + NewLine;
  if MemoTasksInfo <> '' then
    Result := Result + MemoTasksInfo + NewLine + NewLine;
  Result := Result + 'Virtual camera:' + NewLine + Space + Driver;
end;
